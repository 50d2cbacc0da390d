import { Module } from '@nestjs/common';
import { AuthService } from './auth.service';
import { TokensRepository } from './tokens.repository';

@Module({ providers: [AuthService, TokensRepository], exports: [AuthService] })
export class AuthModule {}
